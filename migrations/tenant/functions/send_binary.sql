-- realtime.send_binary(bytea, text, text, boolean): like realtime.send for a binary payload
-- (stored in binary_payload, no id injected).
create or replace function realtime.send_binary(
  payload bytea,
  event text,
  topic text,
  private boolean default true
)
  returns void
  language plpgsql
as $function$
DECLARE
  generated_id uuid;
BEGIN
  BEGIN
    generated_id := gen_random_uuid();

    EXECUTE format('SET LOCAL realtime.topic TO %L', topic);

    INSERT INTO realtime.messages (id, binary_payload, event, topic, private, extension)
    VALUES (generated_id, payload, event, topic, private, 'broadcast');
  EXCEPTION
    WHEN OTHERS THEN
      RAISE WARNING 'WarnSendingBroadcastMessage: %', SQLERRM;
  END;
END;
$function$;
