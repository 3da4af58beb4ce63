-- 20250123174212 RemoveUnusedPublications
-- Drops the broadcast publications of earlier releases; the replication connection creates
-- the one it needs.
do $$
declare
    pub record;
begin
    for pub in
        select pubname from pg_publication
        where pubname like 'realtime_messages%' or pubname like 'supabase_realtime_messages%'
    loop
        execute 'DROP PUBLICATION IF EXISTS ' || quote_ident(pub.pubname);
    end loop;
end $$;
