-- postgresMicro: what mailer-spy would have sent (or, in live mode, sends).
-- Idempotent: safe to run again on every start; versions are recorded in
-- schema_version so a successor can tell what a database has seen.
create table if not exists schema_version (
	version    integer primary key,
	note       text not null,
	applied_at timestamptz not null default now()
);

create table if not exists spied_mail (
	id             bigint generated always as identity primary key,
	correlation_id uuid not null unique,
	payroll_id     bigint not null,
	destination    text not null,
	subject        text not null,
	body           text not null,
	created_at     timestamptz not null default now(),
	consumed_at    timestamptz,
	consumed_by    bigint
);


insert into schema_version (version, note)
	values (1, 'spied_mail') on conflict (version) do nothing;

-- Version 2: delivery state for SPY_MODE=live (the canary's new path), the
-- same transactional outbox as sent_mail in postgresMono. status is null
-- for a row recorded in spy mode (nothing to send); a live spy inserts
-- 'pending' with the record, and its delivery workers (common/delivery.c)
-- claim due pending rows and settle them 'sent' or 'failed'. Each column
-- is added only when missing, so the file can run again on any version.
alter table spied_mail
	add column if not exists status text
		check (status in ('pending', 'sent', 'failed')),
	add column if not exists attempts integer not null default 0,
	add column if not exists last_error text,
	add column if not exists next_attempt_at timestamptz,
	add column if not exists sent_at timestamptz;

-- Delivery workers claim due pending rows.
create index if not exists spied_mail_outbox_due
	on spied_mail (next_attempt_at) where status = 'pending';

insert into schema_version (version, note)
	values (2, 'spied_mail delivery state (live mode)')
	on conflict (version) do nothing;

-- Version 3: the reconciler's queue. Unconsumed rows used to be found
-- through a partial index on (correlation_id) where consumed_at is null;
-- with consumed_at in an index predicate, every consume was a non-HOT
-- update (a new row version elsewhere plus an entry in every index), and
-- marking dominated the reconciler's run. Now reconcile_queue holds the
-- correlation id of every unconsumed row, kept by the triggers below
-- whoever writes spied_mail (the services, the reconciler, an operator's
-- UPDATE, a test's INSERT), so consumed_at stays the truth and a consume
-- touches no index of spied_mail: PostgreSQL can update it in place (HOT).
-- The reconciler reads the queue joined to spied_mail, in correlation-id
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
create or replace function spied_mail_queue_insert_row() returns trigger
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
create or replace function spied_mail_queue_update() returns trigger
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

create or replace function spied_mail_queue_delete() returns trigger
language plpgsql set search_path from current as $$
begin
	delete from reconcile_queue q using old_rows o
		where q.correlation_id = o.correlation_id;
	return null;
end $$;

create or replace function spied_mail_queue_truncate() returns trigger
language plpgsql set search_path from current as $$
begin
	-- delete, not truncate: the queue may be in the same TRUNCATE
	delete from reconcile_queue;
	return null;
end $$;

-- Version 3's statement trigger becomes this row trigger in one statement
-- (a new function name, so no INSERT meanwhile meets a half-changed pair).
create or replace trigger spied_mail_queue_insert
	after insert on spied_mail for each row
	when (new.consumed_at is null
	      and current_setting('reconcile_queue.caller_keeps', true)
	          is distinct from 'on')
	execute function spied_mail_queue_insert_row();
drop function if exists spied_mail_queue_insert();
create or replace trigger spied_mail_queue_update
	after update of consumed_at on spied_mail for each row
	when (old.consumed_at is distinct from new.consumed_at
	      and current_setting('reconcile_queue.caller_keeps', true)
	          is distinct from 'on')
	execute function spied_mail_queue_update();
create or replace trigger spied_mail_queue_delete after delete on spied_mail
	referencing old table as old_rows
	for each statement execute function spied_mail_queue_delete();
create or replace trigger spied_mail_queue_truncate after truncate on spied_mail
	for each statement execute function spied_mail_queue_truncate();

-- Once: queue the rows already unconsumed, then drop the old index (the
-- triggers exist by now, so a row written meanwhile is queued by them).
do $$
begin
	if not exists (select 1 from schema_version where version = 3) then
		insert into reconcile_queue (correlation_id)
			select correlation_id from spied_mail where consumed_at is null
			on conflict do nothing;
		if to_regclass('spied_mail_unconsumed') is not null then
			drop index spied_mail_unconsumed;
		end if;
		insert into schema_version (version, note)
			values (3, 'reconcile_queue replaces spied_mail_unconsumed');
	end if;
end $$;

insert into schema_version (version, note)
	values (4, 'reconcile_queue insert trigger per row, skipped by caller_keeps')
	on conflict (version) do nothing;
