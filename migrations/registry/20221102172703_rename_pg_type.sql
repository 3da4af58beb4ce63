UPDATE extensions SET type = 'postgres_cdc_rls';
