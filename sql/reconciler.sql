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

-- Version 101: clusters (docs/RECONCILER.md, "Clusters"). Every mismatch
-- gets the cluster of its signature (kind, fields, masked diff) after the
-- run that found it; cluster_id is null until then. A cluster keeps its
-- member counts, so that no page has to count a million rows: `members`
-- (every member ever found: purge, which deletes resolved ones, keeps
-- it) and `open_members` are the folded totals, reconciliation_cluster_delta
-- the changes not folded yet (appended by a trigger when a member is
-- resolved or reopened, so writers of different shards never wait on
-- the same cluster row), folded by the next clustering step.
create table if not exists reconciliation_cluster (
	id             bigint generated always as identity primary key,
	signature_hash bytea not null unique,  -- sha256 of the signature
	signature      text not null,          -- masked, for people (bounded)
	kind           text not null,
	fields         text[] not null default '{}',
	example_id     bigint not null,        -- its first member
	first_seen     timestamptz not null,
	last_seen      timestamptz not null,
	members        bigint not null default 0,
	open_members   bigint not null default 0
);

create table if not exists reconciliation_cluster_delta (
	cluster_id bigint not null,
	d_members  bigint not null,
	d_open     bigint not null
);
create index if not exists reconciliation_cluster_delta_cluster
	on reconciliation_cluster_delta (cluster_id);

alter table reconciliation_mismatch add column if not exists cluster_id bigint;
-- A cluster's members in id order (its page, keyset by id), open first
-- for `ack --cluster` and the open listing.
create index if not exists reconciliation_mismatch_cluster
	on reconciliation_mismatch (cluster_id, id);
create index if not exists reconciliation_mismatch_cluster_open
	on reconciliation_mismatch (cluster_id, id) where resolved_at is null;
-- A run's clusters and how many members it found: an index-only scan
-- (the run page and `report` at a million mismatches).
create index if not exists reconciliation_mismatch_run_cluster
	on reconciliation_mismatch (run_id, cluster_id);
-- What the clustering step has still to do.
create index if not exists reconciliation_mismatch_unclustered
	on reconciliation_mismatch (id) where cluster_id is null;
-- The overview's runs, newest first.
create index if not exists reconciliation_run_started
	on reconciliation_run (started_at);

create or replace function reconciliation_cluster_track() returns trigger
language plpgsql as $$
begin
	insert into reconciliation_cluster_delta
		values (new.cluster_id, 0,
		        case when new.resolved_at is null then 1 else -1 end);
	return new;
end $$;

drop trigger if exists reconciliation_cluster_resolve on reconciliation_mismatch;
create trigger reconciliation_cluster_resolve
	after update of resolved_at on reconciliation_mismatch for each row
	when (old.cluster_id is not null and old.cluster_id = new.cluster_id
	      and (old.resolved_at is null) <> (new.resolved_at is null))
	execute function reconciliation_cluster_track();
drop trigger if exists reconciliation_cluster_delete on reconciliation_mismatch;

-- Emptying the mismatches (tests, a fresh start) empties the clusters:
-- their counts would describe members that are gone. DELETE, not TRUNCATE:
-- a TRUNCATE that names the cluster tables too (or reaches them by
-- CASCADE) still has them open when this trigger runs.
create or replace function reconciliation_cluster_truncate() returns trigger
language plpgsql as $$
begin
	delete from reconciliation_cluster_delta;
	delete from reconciliation_cluster;
	return null;
end $$;
drop trigger if exists reconciliation_cluster_truncate on reconciliation_mismatch;
create trigger reconciliation_cluster_truncate
	after truncate on reconciliation_mismatch for each statement
	execute function reconciliation_cluster_truncate();

insert into schema_version (version, note)
	values (101, 'clusters: reconciliation_cluster, cluster_id, counts')
	on conflict (version) do nothing;
