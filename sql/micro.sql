-- postgresMicro: what mailer-spy would have sent (or, in live mode, sent).
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

-- The reconciler streams unconsumed rows in correlation-id order.
create index if not exists spied_mail_unconsumed
	on spied_mail (correlation_id) where consumed_at is null;

insert into schema_version (version, note)
	values (1, 'spied_mail') on conflict (version) do nothing;
