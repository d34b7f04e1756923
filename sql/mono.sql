-- postgresMono: the monolith's payrolls and its transactional outbox of
-- mail. Idempotent: safe to run again; versions recorded in schema_version.
create table if not exists schema_version (
	version    integer primary key,
	note       text not null,
	applied_at timestamptz not null default now()
);

create table if not exists payroll (
	id              bigint generated always as identity primary key,
	ship_to         text not null,
	total           numeric(12,2) not null
	                check (total >= 0 and total <= 1000000000),
	idempotency_key text unique,
	request_hash    text,            -- of the first body sent with the key
	created_at      timestamptz not null default now()
);

create table if not exists sent_mail (
	id              bigint generated always as identity primary key,
	correlation_id  uuid not null unique,
	payroll_id      bigint not null references payroll (id),
	destination     text not null,
	subject         text not null,
	body            text not null,
	status          text not null default 'pending'
	                check (status in ('pending', 'sent', 'failed', 'delegated')),
	attempts        integer not null default 0,
	last_error      text,
	next_attempt_at timestamptz not null default now(),
	sent_at         timestamptz,
	created_at      timestamptz not null default now(),
	consumed_at     timestamptz,
	consumed_by     bigint
);

-- Delivery workers claim due pending rows.
create index if not exists sent_mail_outbox_due
	on sent_mail (next_attempt_at) where status = 'pending';
create index if not exists sent_mail_payroll on sent_mail (payroll_id);

insert into schema_version (version, note)
	values (1, 'payroll, sent_mail') on conflict (version) do nothing;

-- Version 2: in NOTIFIER=remote the hand-off to mailer-spy is the mail, so
-- it is recorded: a delegated row with no handed_off_at is handed over again.
alter table sent_mail add column if not exists handed_off_at timestamptz;
create index if not exists sent_mail_handoff_due
	on sent_mail (next_attempt_at)
	where status = 'delegated' and handed_off_at is null;

insert into schema_version (version, note)
	values (2, 'sent_mail.handed_off_at') on conflict (version) do nothing;

-- Version 3: the reconciler's queue. Unconsumed rows used to be found
-- through a partial index on (correlation_id) where consumed_at is null;
-- with consumed_at in an index predicate, every consume was a non-HOT
-- update (a new row version elsewhere plus an entry in every index), and
-- marking dominated the reconciler's run. Now reconcile_queue holds the
-- correlation id of every unconsumed row, kept by the triggers below
-- whoever writes sent_mail (the services, the reconciler, an operator's
-- UPDATE, a test's INSERT), so consumed_at stays the truth and a consume
-- touches no index of sent_mail: PostgreSQL can update it in place (HOT).
-- The reconciler reads the queue joined to sent_mail, in correlation-id
-- order. correlation_id is never updated.
create table if not exists reconcile_queue (
	correlation_id uuid primary key
);

-- Version 4: the INSERT trigger is a row trigger too. As a statement
-- trigger it needed a transition table, a copy of every inserted row that
-- PostgreSQL builds whatever the trigger then does: with ON CONFLICT that
-- copy and the trigger's INSERT took about two fifths of a spy batch's server
-- time. A writer that queues its own rows in the same statement (the
-- spy's batch INSERT, the benchmarks' bulk loads) sets caller_keeps and
-- pays nothing; any other writer (a service's single-row INSERT, an
-- operator, a test, COPY) is queued here, row by row.
create or replace function sent_mail_queue_insert_row() returns trigger
language plpgsql set search_path from current as $$
begin
	insert into reconcile_queue (correlation_id)
		values (new.correlation_id) on conflict do nothing;
	return null;
end $$;

-- A row trigger, so that an UPDATE that leaves consumed_at alone (a
-- delivery settling its row) costs nothing; a session that keeps the
-- queue itself, set-based (the reconciler's marks), says so with
-- SET reconcile_queue.caller_keeps = on and the trigger stays out.
create or replace function sent_mail_queue_update() returns trigger
language plpgsql set search_path from current as $$
begin
	if new.consumed_at is null then
		insert into reconcile_queue (correlation_id)
			values (new.correlation_id) on conflict do nothing;
	else
		delete from reconcile_queue
			where correlation_id = new.correlation_id;
	end if;
	return null;
end $$;

create or replace function sent_mail_queue_delete() returns trigger
language plpgsql set search_path from current as $$
begin
	delete from reconcile_queue q using old_rows o
		where q.correlation_id = o.correlation_id;
	return null;
end $$;

create or replace function sent_mail_queue_truncate() returns trigger
language plpgsql set search_path from current as $$
begin
	-- delete, not truncate: the queue may be in the same TRUNCATE
	delete from reconcile_queue;
	return null;
end $$;

-- Version 3's statement trigger becomes this row trigger in one statement
-- (a new function name, so no INSERT meanwhile meets a half-changed pair).
create or replace trigger sent_mail_queue_insert
	after insert on sent_mail for each row
	when (new.consumed_at is null
	      and current_setting('reconcile_queue.caller_keeps', true)
	          is distinct from 'on')
	execute function sent_mail_queue_insert_row();
drop function if exists sent_mail_queue_insert();
create or replace trigger sent_mail_queue_update
	after update of consumed_at on sent_mail for each row
	when (old.consumed_at is distinct from new.consumed_at
	      and current_setting('reconcile_queue.caller_keeps', true)
	          is distinct from 'on')
	execute function sent_mail_queue_update();
create or replace trigger sent_mail_queue_delete after delete on sent_mail
	referencing old table as old_rows
	for each statement execute function sent_mail_queue_delete();
create or replace trigger sent_mail_queue_truncate after truncate on sent_mail
	for each statement execute function sent_mail_queue_truncate();

-- Once: queue the rows already unconsumed, then drop the old index (the
-- triggers exist by now, so a row written meanwhile is queued by them).
do $$
begin
	if not exists (select 1 from schema_version where version = 3) then
		insert into reconcile_queue (correlation_id)
			select correlation_id from sent_mail where consumed_at is null
			on conflict do nothing;
		if to_regclass('sent_mail_unconsumed') is not null then
			drop index sent_mail_unconsumed;
		end if;
		insert into schema_version (version, note)
			values (3, 'reconcile_queue replaces sent_mail_unconsumed');
	end if;
end $$;

insert into schema_version (version, note)
	values (4, 'reconcile_queue insert trigger per row, skipped by caller_keeps')
	on conflict (version) do nothing;
