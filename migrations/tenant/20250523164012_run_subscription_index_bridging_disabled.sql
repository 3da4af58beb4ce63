-- 20250523164012 RunSubscriptionIndexBridgingDisabled
alter table realtime.subscription reset (index_bridging);
