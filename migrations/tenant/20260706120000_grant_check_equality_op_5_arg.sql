-- 20260706120000 GrantCheckEqualityOp5Arg
-- The grant is repeated by final_grants.sql once the function exists.
do $$
begin
    if to_regprocedure('realtime.check_equality_op(realtime.equality_op, regtype, text, text, boolean)') is not null then
        grant execute on function realtime.check_equality_op(realtime.equality_op, regtype, text, text, boolean)
            to postgres, anon, authenticated, service_role;
    end if;
end $$;
