//! The audit hash chain. Every change writes an event; each event's hash covers its fields and
//! the previous event's hash, per organisation, so editing or deleting a row breaks the chain.
//! Events carry digests of the before/after state, never the personal data itself.

use sha2::{Digest, Sha256};

use crate::ids::OrgId;

/// One stored audit event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub before_digest: Option<String>,
    pub after_digest: Option<String>,
    pub source: String,
    pub prev_hash: String,
    pub hash: String,
}

/// The fields of an event before it is chained.
#[derive(Clone, Debug)]
pub struct AuditEntry {
    pub actor: String,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    pub before_digest: Option<String>,
    pub after_digest: Option<String>,
    pub source: String,
}

/// The `prev_hash` of an organisation's first event.
pub fn genesis(org: OrgId) -> String {
    hex::encode(Sha256::digest(format!("carebridge-audit-genesis:{org}")))
}

/// SHA-256 (hex) of a state's canonical bytes: what `before_digest`/`after_digest` hold.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn field(h: &mut Sha256, s: &str) {
    h.update((s.len() as u64).to_be_bytes());
    h.update(s.as_bytes());
}

/// The hash of an event: length-prefixed fields, so no two different events hash alike.
pub fn chain_hash(org: OrgId, prev_hash: &str, seq: i64, at_ms: i64, e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    field(&mut h, &org.to_string());
    field(&mut h, prev_hash);
    h.update(seq.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    for f in [&e.actor, &e.action, &e.target_type, &e.target_id, &e.source] {
        field(&mut h, f);
    }
    for f in [&e.before_digest, &e.after_digest] {
        field(&mut h, f.as_deref().unwrap_or("-"));
    }
    hex::encode(h.finalize())
}

/// What is wrong with a chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("event {seq}: sequence gap (expected {expected}); an event was deleted")]
    Gap { seq: i64, expected: i64 },
    #[error("event {seq}: previous-hash link broken; an earlier event was changed or deleted")]
    Link { seq: i64 },
    #[error("event {seq}: hash mismatch; the event was changed")]
    Hash { seq: i64 },
    #[error(
        "the chain ends at event {last} but the recorded head is event {head}; events were deleted from the end"
    )]
    Head { last: i64, head: i64 },
}

/// Verifies an organisation's events in sequence order against the recorded head
/// (`(seq, hash)` of the last event). Returns the number of events checked.
pub fn verify<'a>(
    org: OrgId,
    records: impl IntoIterator<Item = &'a AuditRecord>,
    head: Option<(i64, &str)>,
) -> Result<u64, ChainBreak> {
    let mut prev = genesis(org);
    let mut expected = 1;
    let mut n = 0;
    for r in records {
        if r.seq != expected {
            return Err(ChainBreak::Gap {
                seq: r.seq,
                expected,
            });
        }
        if r.prev_hash != prev {
            return Err(ChainBreak::Link { seq: r.seq });
        }
        let entry = AuditEntry {
            actor: r.actor.clone(),
            action: r.action.clone(),
            target_type: r.target_type.clone(),
            target_id: r.target_id.clone(),
            before_digest: r.before_digest.clone(),
            after_digest: r.after_digest.clone(),
            source: r.source.clone(),
        };
        if chain_hash(org, &r.prev_hash, r.seq, r.at_ms, &entry) != r.hash {
            return Err(ChainBreak::Hash { seq: r.seq });
        }
        prev = r.hash.clone();
        expected += 1;
        n += 1;
    }
    let last = expected - 1;
    match head {
        Some((hseq, hhash)) if hseq != last || (last > 0 && hhash != prev) => {
            Err(ChainBreak::Head { last, head: hseq })
        }
        None if last > 0 => Err(ChainBreak::Head { last, head: 0 }),
        _ => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn chain(org: OrgId, n: i64) -> Vec<AuditRecord> {
        let mut prev = genesis(org);
        (1..=n)
            .map(|seq| {
                let e = AuditEntry {
                    actor: "system:test".into(),
                    action: "person.update".into(),
                    target_type: "person".into(),
                    target_id: format!("p{seq}"),
                    before_digest: None,
                    after_digest: Some(digest(b"x")),
                    source: "api".into(),
                };
                let hash = chain_hash(org, &prev, seq, seq * 10, &e);
                let r = AuditRecord {
                    seq,
                    at_ms: seq * 10,
                    actor: e.actor,
                    action: e.action,
                    target_type: e.target_type,
                    target_id: e.target_id,
                    before_digest: e.before_digest,
                    after_digest: e.after_digest,
                    source: e.source,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                r
            })
            .collect()
    }

    #[test]
    fn detects_every_kind_of_tampering() {
        let org = OrgId(Uuid::from_u128(7));
        let c = chain(org, 5);
        let head = (5, c[4].hash.as_str());
        assert_eq!(verify(org, &c, Some(head)), Ok(5));

        let mut changed = c.clone();
        changed[2].action = "person.delete".into();
        assert_eq!(
            verify(org, &changed, Some(head)),
            Err(ChainBreak::Hash { seq: 3 })
        );

        let mut deleted = c.clone();
        deleted.remove(1);
        assert_eq!(
            verify(org, &deleted, Some(head)),
            Err(ChainBreak::Gap {
                seq: 3,
                expected: 2
            })
        );

        let truncated = &c[..4];
        assert!(matches!(
            verify(org, truncated, Some(head)),
            Err(ChainBreak::Head { .. })
        ));

        let other = OrgId(Uuid::from_u128(8));
        assert_eq!(
            verify(other, &c, Some(head)),
            Err(ChainBreak::Link { seq: 1 })
        );
    }
}
