-- realtime.send(jsonb, text, text, boolean): stores a broadcast row in realtime.messages.
-- Adds an `id` to the payload when it has none; every error becomes a warning so the
-- caller's transaction is never aborted by a failed broadcast.
create or replace function realtime.send(
  payload jsonb,
  event text,
  topic text,
  private boolean default true
)
  returns void
  language plpgsql
as $function$
DECLARE
  generated_id uuid;
  final_payload jsonb;
BEGIN
  BEGIN
    generated_id := gen_random_uuid();

    -- keep a caller-supplied id, otherwise expose the row id in the payload
    IF payload ? 'id' THEN
      final_payload := payload;
    ELSE
      final_payload := jsonb_set(payload, '{id}', to_jsonb(generated_id));
    END IF;

    -- visible to INSERT policies through realtime.topic() until the caller commits
    EXECUTE format('SET LOCAL realtime.topic TO %L', topic);

    INSERT INTO realtime.messages (id, payload, event, topic, private, extension)
    VALUES (generated_id, final_payload, event, topic, private, 'broadcast');
  EXCEPTION
    WHEN OTHERS THEN
      RAISE WARNING 'WarnSendingBroadcastMessage: %', SQLERRM;
  END;
END;
$function$;
