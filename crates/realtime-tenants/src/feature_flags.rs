//! Feature flags (`feature_flags` rows) and their resolution for one tenant.

use serde_json::Value;

use crate::tenant::Tenant;

/// Name of the flag gating the GCM backfill (seeded enabled).
pub const GCM_ENCRYPTION_BACKFILL: &str = "gcm_encryption_backfill";

/// One row of `feature_flags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureFlag {
    /// Unique name.
    pub name: String,
    /// Global switch.
    pub enabled: bool,
    /// Share of tenants (0..=100) in the rollout.
    pub rollout_percentage: i32,
    /// Bucketing key; `None` → the flag name.
    pub bucket_key: Option<String>,
}

/// No row → false (a tenant override does not resurrect a missing flag); else the tenant's
/// override in `tenants.feature_flags` wins; else disabled → false; else the rollout bucket.
pub fn resolve(flag: Option<&FeatureFlag>, tenant: &Tenant) -> bool {
    let Some(flag) = flag else { return false };
    if let Some(Value::Bool(b)) = tenant.feature_flags.get(&flag.name) {
        return *b;
    }
    if !flag.enabled {
        return false;
    }
    let key = flag.bucket_key.as_deref().unwrap_or(&flag.name);
    i64::from(bucket(&tenant.external_id, key)) < i64::from(flag.rollout_percentage)
}

/// Deterministic bucket in 0..100 (FNV-1a over tenant and key).
fn bucket(external_id: &str, key: &str) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in external_id.bytes().chain([0u8]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % 100) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_deterministic_and_spread() {
        assert_eq!(bucket("acme", "flag"), bucket("acme", "flag"));
        let ids: Vec<String> = (0..1000).map(|i| format!("tenant-{i}")).collect();
        let below_half = ids.iter().filter(|id| bucket(id, "flag") < 50).count();
        assert!((400..600).contains(&below_half), "{below_half}");
    }
}
