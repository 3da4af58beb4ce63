UPDATE tenants SET max_events_per_second = 1000;
