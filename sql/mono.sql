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

-- Versions 3 and 4, the reconciler's queue (reconcile_queue and the
-- triggers that keep it), are sql/queue.sql: the same file for both mail
-- tables, loaded after this one.
