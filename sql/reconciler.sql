-- postgresMono: the reconciler's own history (see docs/RECONCILER.md).
-- Idempotent: safe to run again; versions recorded in schema_version
-- (versions 100.. belong to the reconciler, mono.sql uses 1..99).
create table if not exists schema_version (
	version    integer primary key,
	note       text not null,
	applied_at timestamptz not null default now()
);

-- One row per `reconciler run` that got the lock. A run killed before it
-- finished stays 'running' until the next run of the same shard marks it
-- 'aborted'; its mismatches and consumed rows stay valid.
create table if not exists reconciliation_run (
	id               bigint generated always as identity primary key,
	started_at       timestamptz not null default now(),
	finished_at      timestamptz,
	status           text not null default 'running'
	                 check (status in ('running', 'done', 'failed', 'aborted')),
	cutoff           timestamptz not null,  -- rows created after it were left alone
	grace_seconds    integer not null,
	shard_k          integer not null default 1,
	shard_n          integer not null default 1,
	rules_file       text,
	mono_rows        bigint not null default 0,  -- unconsumed rows read
	micro_rows       bigint not null default 0,
	matched          bigint not null default 0,  -- equal as stored
	ignored          bigint not null default 0,  -- equal only after noise rules
	healed           bigint not null default 0,  -- partner consumed by an earlier run
	late             bigint not null default 0,  -- open "missing" resolved by a late partner
	deferred         bigint not null default 0,  -- partner still in its grace period
	skipped_open     bigint not null default 0,  -- rows already in an open mismatch
	content          bigint not null default 0,  -- new mismatches by kind
	missing_in_micro bigint not null default 0,
	missing_in_mono  bigint not null default 0,
	new_mismatches   bigint not null default 0,
	rule_counts      jsonb not null default '[]',  -- [{rule, absorbed}] in file order
	error            text
);

create index if not exists reconciliation_run_shard
	on reconciliation_run (shard_n, shard_k, id);

-- One row per mismatch found. Both sides' values are kept as they were
-- read (null for an absent side). At most one open (unresolved) mismatch
-- per correlation id, so a rerun never records the same one twice.
create table if not exists reconciliation_mismatch (
	id                bigint generated always as identity primary key,
	run_id            bigint not null references reconciliation_run (id),
	correlation_id    uuid not null,
	kind              text not null
	                  check (kind in ('content', 'missing_in_micro', 'missing_in_mono')),
	fields            text[] not null default '{}',  -- differing fields (content)
	mono_destination  text,
	mono_subject      text,
	mono_body         text,
	micro_destination text,
	micro_subject     text,
	micro_body        text,
	found_at          timestamptz not null default now(),
	resolved_at       timestamptz,
	resolved_by       bigint references reconciliation_run (id),  -- null when acked
	resolution        text check (resolution in ('late', 'ack')),
	note              text
);

create unique index if not exists reconciliation_mismatch_open
	on reconciliation_mismatch (correlation_id) where resolved_at is null;
create index if not exists reconciliation_mismatch_run
	on reconciliation_mismatch (run_id, id);

insert into schema_version (version, note)
	values (100, 'reconciliation_run, reconciliation_mismatch')
	on conflict (version) do nothing;
