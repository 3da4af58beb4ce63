-- 20230128025114 AddInOpToFilters
-- The `in` filter operator (check_equality_op and subscription_check_filters learn it through
-- functions/).
alter type realtime.equality_op add value if not exists 'in';
