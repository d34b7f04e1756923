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

-- Versions 3 and 4, the reconciler's queue (reconcile_queue and the
-- triggers that keep it), are sql/queue.sql: the same file for both mail
-- tables, loaded after this one.
