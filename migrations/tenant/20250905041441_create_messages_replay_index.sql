-- 20250905041441 CreateMessagesReplayIndex
-- Serves replay of private broadcasts (newest first per topic); cascades to every partition.
create index if not exists messages_inserted_at_topic_index
    on realtime.messages (inserted_at desc, topic)
    where extension = 'broadcast' and private is true;
