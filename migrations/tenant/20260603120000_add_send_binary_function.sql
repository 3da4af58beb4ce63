-- 20260603120000 AddSendBinaryFunction
-- Binary payloads go through realtime.send_binary (from functions/); the short-lived bytea
-- overload of realtime.send is removed.
drop function if exists realtime.send(bytea, text, text, boolean);
