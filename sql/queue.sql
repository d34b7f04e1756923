-- The reconciler's queue, for both mail tables: loaded after sql/mono.sql
-- into postgresMono (sent_mail) and after sql/micro.sql into postgresMicro
-- (spied_mail). Idempotent like them; it records schema versions 3 and 4.
--
-- Version 3: unconsumed rows used to be found through a partial index on
-- (correlation_id) where consumed_at is null; with consumed_at in an index
-- predicate, every consume was a non-HOT update (a new row version
-- elsewhere plus an entry in every index), and marking dominated the
-- reconciler's run. Now reconcile_queue holds the correlation id of every
-- unconsumed row, kept by the triggers below whoever writes the mail table
-- (the services, the reconciler, an operator's UPDATE, a test's INSERT), so
-- consumed_at stays the truth and a consume touches no index of the mail
-- table: PostgreSQL can update it in place (HOT). The reconciler reads the
-- queue joined to the mail table, in correlation-id order. correlation_id
-- is never updated.
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
create or replace function reconcile_queue_insert_row() returns trigger
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
create or replace function reconcile_queue_update() returns trigger
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

create or replace function reconcile_queue_delete() returns trigger
language plpgsql set search_path from current as $$
begin
	delete from reconcile_queue q using old_rows o
		where q.correlation_id = o.correlation_id;
	return null;
end $$;

create or replace function reconcile_queue_truncate() returns trigger
language plpgsql set search_path from current as $$
begin
	-- delete, not truncate: the queue may be in the same TRUNCATE
	delete from reconcile_queue;
	return null;
end $$;

-- The triggers, on whichever mail table this database has. Each is
-- replaced in one statement (version 3's statement INSERT trigger becomes
-- the row trigger without a moment in which an INSERT meets a half-changed
-- pair); then the functions of earlier versions, named per table, go.
-- Once (no version 3 yet): queue the rows already unconsumed, then drop
-- the old index (the triggers exist by now, so a row written meanwhile is
-- queued by them).
-- (Identifiers go in with quote_ident, not format(): a loader that passes
-- the file through a driver's parameter substitution finds no percent sign.)
do $$
declare
	t text;
	tq text;
	first_time boolean :=
		not exists (select 1 from schema_version where version = 3);
begin
	foreach t in array array['sent_mail', 'spied_mail'] loop
		continue when to_regclass(t) is null;
		tq := quote_ident(t);
		execute 'create or replace trigger ' || quote_ident(t || '_queue_insert')
			|| ' after insert on ' || tq || ' for each row'
			|| ' when (new.consumed_at is null'
			|| ' and current_setting(''reconcile_queue.caller_keeps'', true)'
			|| ' is distinct from ''on'')'
			|| ' execute function reconcile_queue_insert_row()';
		execute 'create or replace trigger ' || quote_ident(t || '_queue_update')
			|| ' after update of consumed_at on ' || tq || ' for each row'
			|| ' when (old.consumed_at is distinct from new.consumed_at'
			|| ' and current_setting(''reconcile_queue.caller_keeps'', true)'
			|| ' is distinct from ''on'')'
			|| ' execute function reconcile_queue_update()';
		execute 'create or replace trigger ' || quote_ident(t || '_queue_delete')
			|| ' after delete on ' || tq || ' referencing old table as old_rows'
			|| ' for each statement execute function reconcile_queue_delete()';
		execute 'create or replace trigger ' || quote_ident(t || '_queue_truncate')
			|| ' after truncate on ' || tq
			|| ' for each statement execute function reconcile_queue_truncate()';
		execute 'drop function if exists '
			|| quote_ident(t || '_queue_insert') || '(), '
			|| quote_ident(t || '_queue_insert_row') || '(), '
			|| quote_ident(t || '_queue_update') || '(), '
			|| quote_ident(t || '_queue_delete') || '(), '
			|| quote_ident(t || '_queue_truncate') || '()';
		if first_time then
			execute 'insert into reconcile_queue (correlation_id)'
				|| ' select correlation_id from ' || tq
				|| ' where consumed_at is null on conflict do nothing';
			execute 'drop index if exists ' || quote_ident(t || '_unconsumed');
			insert into schema_version (version, note)
				values (3, 'reconcile_queue replaces ' || t || '_unconsumed')
				on conflict (version) do nothing;
		end if;
	end loop;
end $$;

insert into schema_version (version, note)
	values (4, 'reconcile_queue insert trigger per row, skipped by caller_keeps')
	on conflict (version) do nothing;
