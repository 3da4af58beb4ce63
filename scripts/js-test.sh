#!/usr/bin/env bash
# Placeholder until the supabase-js test lands.
exit 0
