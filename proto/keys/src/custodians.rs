//! A key's escrow custodians ([`pb::KeyEscrow`]): who may hold parts of each node's
//! share and how many of them rebuild it, fixed in the key's manifest.
//!
//! The custodians come from the ceremony that creates the key (its setup, so every
//! node holds the key to the same ones); a refresh keeps them unless its setup,
//! which the key's administrators authorize, brings others. A node escrows its
//! share to these recipients only, so whoever relays an `EscrowSplit` (the ceremony
//! tool) cannot name recipients of its own. Nodes check that the custodians are
//! consistent and well-formed, not that they are legitimate: whoever creates a key
//! chooses them, and its custodians check the transcript (`transcript verify
//! --custodians`).

use quorate_wire::pb;

/// An escrow custodian: a name and an age X25519 recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Custodian {
    /// Name: 1-64 of `A-Z a-z 0-9 . _ -` (used in file names).
    pub name: String,
    /// age X25519 recipient, `age1…`, as the manifest holds it.
    pub recipient: String,
}

/// A validated key escrow: `threshold` of the custodians rebuild a node's share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEscrow {
    /// Parts needed to recover (`k`), `2..=custodians.len()`.
    pub threshold: u16,
    /// The custodians (`m`), one part each, in manifest order.
    pub custodians: Vec<Custodian>,
}

impl KeyEscrow {
    /// Checks a key escrow: 2..=[`MAX_CUSTODIANS`](quorate_wire::MAX_CUSTODIANS)
    /// custodians with valid names distinct even ignoring case, distinct age X25519
    /// recipients, and a threshold within `2..=m`. Distinct recipients are compared
    /// by their decoded keys: two custodians sharing one key would let its holder
    /// alone count twice towards the threshold.
    pub fn from_pb(escrow: &pb::KeyEscrow) -> Result<Self, String> {
        let m = escrow.custodians.len();
        if m < 2 || m > usize::from(quorate_wire::MAX_CUSTODIANS) {
            return Err(format!(
                "{m} custodian(s); an escrow needs 2..={}",
                quorate_wire::MAX_CUSTODIANS
            ));
        }
        let threshold = u16::try_from(escrow.threshold)
            .ok()
            .filter(|k| *k >= 2 && usize::from(*k) <= m)
            .ok_or_else(|| {
                format!(
                    "escrow threshold {} is not within 2..={m} (the number of custodians)",
                    escrow.threshold
                )
            })?;
        let mut custodians: Vec<Custodian> = Vec::with_capacity(m);
        let mut keys: Vec<[u8; 32]> = Vec::with_capacity(m);
        for c in &escrow.custodians {
            quorate_wire::validate_custodian_name(&c.name)?;
            // Names differing only in case would name the same part file on a
            // case-insensitive file system, and look alike to people.
            if let Some(d) = custodians
                .iter()
                .find(|d| d.name.eq_ignore_ascii_case(&c.name))
            {
                return Err(if d.name == c.name {
                    format!("custodian {:?} is named twice", c.name)
                } else {
                    format!(
                        "custodians {:?} and {:?} differ only in case; names must differ \
                         otherwise",
                        d.name, c.name
                    )
                });
            }
            let key = decode_age_recipient(&c.age_recipient)
                .map_err(|e| format!("custodian {:?}: {e}", c.name))?;
            if let Some(i) = keys.iter().position(|k| *k == key) {
                return Err(format!(
                    "custodians {:?} and {:?} have the same recipient; each custodian needs \
                     a key of its own, or one holder counts twice towards the threshold",
                    custodians[i].name, c.name
                ));
            }
            keys.push(key);
            custodians.push(Custodian {
                name: c.name.clone(),
                recipient: c.age_recipient.clone(),
            });
        }
        Ok(Self {
            threshold,
            custodians,
        })
    }

    /// The protobuf form, as a manifest or a ceremony setup holds it.
    pub fn to_pb(&self) -> pb::KeyEscrow {
        pb::KeyEscrow {
            threshold: u32::from(self.threshold),
            custodians: self
                .custodians
                .iter()
                .map(|c| pb::EscrowCustodian {
                    name: c.name.clone(),
                    age_recipient: c.recipient.clone(),
                })
                .collect(),
        }
    }

    /// `name:recipient` per custodian, comma-separated: how audit records and logs
    /// name who an escrow goes to.
    pub fn describe(&self) -> String {
        self.custodians
            .iter()
            .map(|c| format!("{}:{}", c.name, c.recipient))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Checks that `recipient` is an age X25519 recipient as age writes it: lowercase
/// Bech32 (not Bech32m) with the human-readable part `age` and a 32-byte key.
/// Lowercase only, so one recipient has one spelling in a manifest. The key must be
/// a canonical u-coordinate (bit 255 clear, below 2^255-19: other encodings alias a
/// real key, so two spellings would name one custodian) and not of small order
/// (every encryption to it derives the all-zero shared secret; age refuses to
/// encrypt, by panicking).
pub fn check_age_recipient(recipient: &str) -> Result<(), String> {
    decode_age_recipient(recipient).map(|_| ())
}

/// The 32-byte X25519 key of an age recipient, checked as [`check_age_recipient`]
/// describes.
fn decode_age_recipient(recipient: &str) -> Result<[u8; 32], String> {
    use bech32::FromBase32;
    let not = |why: &str| format!("{recipient:?} is not an age X25519 recipient (age1…): {why}");
    if !recipient.starts_with("age1") || recipient.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(not("it must start with \"age1\" and be lowercase"));
    }
    let (hrp, data, variant) = bech32::decode(recipient).map_err(|e| not(&e.to_string()))?;
    if hrp != "age" || variant != bech32::Variant::Bech32 {
        return Err(not("wrong Bech32 prefix or variant"));
    }
    let key = Vec::<u8>::from_base32(&data).map_err(|e| not(&e.to_string()))?;
    let key: [u8; 32] = key.try_into().map_err(|_| not("the key is not 32 bytes"))?;
    check_x25519_public_key(&key).map_err(not)?;
    Ok(key)
}

/// Refuses an X25519 public key (a little-endian u-coordinate) that is not
/// canonical or of small order.
fn check_x25519_public_key(key: &[u8; 32]) -> Result<(), &'static str> {
    use curve25519_dalek::montgomery::MontgomeryPoint;
    use curve25519_dalek::scalar::Scalar;
    if key[31] & 0x80 != 0 {
        return Err("bit 255 of the key is set (not a canonical X25519 key)");
    }
    // p = 2^255 - 19 is ed ff .. ff 7f little-endian; u in p..2^255 aliases u - p.
    if key[31] == 0x7f && key[1..31].iter().all(|b| *b == 0xff) && key[0] >= 0xed {
        return Err("the key is not below 2^255-19 (not a canonical X25519 key)");
    }
    // Multiplying by the cofactor sends exactly the points of small order (on the
    // curve or its twist) to the identity, whose u-coordinate the ladder gives as 0.
    if (MontgomeryPoint(*key) * Scalar::from(8u8)).to_bytes() == [0u8; 32] {
        return Err("the key is a point of small order (every shared secret would be zero)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recipient() -> String {
        age::x25519::Identity::generate().to_public().to_string()
    }

    fn escrow(names: &[&str], threshold: u32) -> pb::KeyEscrow {
        pb::KeyEscrow {
            threshold,
            custodians: names
                .iter()
                .map(|n| pb::EscrowCustodian {
                    name: (*n).into(),
                    age_recipient: recipient(),
                })
                .collect(),
        }
    }

    #[test]
    fn age_recipients_that_age_makes_are_accepted() {
        for _ in 0..8 {
            check_age_recipient(&recipient()).unwrap();
        }
    }

    /// An age recipient string for raw key bytes, as age would print it.
    fn recipient_of(key: [u8; 32]) -> String {
        use bech32::ToBase32;
        bech32::encode("age", key.to_base32(), bech32::Variant::Bech32).unwrap()
    }

    fn u_le(decimal: &str) -> [u8; 32] {
        // Little-endian bytes of a decimal number below 2^256.
        let mut out = [0u8; 32];
        for d in decimal.bytes() {
            let mut carry = u32::from(d - b'0');
            for b in out.iter_mut() {
                let v = u32::from(*b) * 10 + carry;
                *b = (v & 0xff) as u8;
                carry = v >> 8;
            }
            assert_eq!(carry, 0, "{decimal} overflows");
        }
        out
    }

    #[test]
    fn weak_or_non_canonical_x25519_keys_are_refused() {
        let p = "57896044618658097711785492504343953926634992332820282019728792003956564819949";
        let small_order = [
            "0",
            "1",
            "325606250916557431795983626356110631294008115727848805560023387167927233504",
            "39382357235489614581723060781553021112529911719440698176882885853963445705823",
            "57896044618658097711785492504343953926634992332820282019728792003956564819948",
        ];
        let non_canonical = [
            p,
            "57896044618658097711785492504343953926634992332820282019728792003956564819950",
            "57896044618658097711785492504343953926634992332820282019728792003956564819967",
        ];
        for u in small_order.iter().chain(&non_canonical) {
            let bad = recipient_of(u_le(u));
            let err = check_age_recipient(&bad).expect_err(u);
            assert!(
                err.contains("small order") || err.contains("canonical"),
                "{u}: {err}"
            );
        }
        // A real key with bit 255 set: x25519 ignores the bit, so it would alias the
        // custodian's own key.
        let good = age::x25519::Identity::generate().to_public().to_string();
        let mut key = decode_age_recipient(&good).unwrap();
        key[31] |= 0x80;
        let err = check_age_recipient(&recipient_of(key)).unwrap_err();
        assert!(err.contains("bit 255"), "{err}");
        // The encoding helper itself agrees with age on a good key.
        key[31] &= 0x7f;
        assert_eq!(recipient_of(key), good);
    }

    #[test]
    fn things_that_are_not_age_recipients_are_refused() {
        let good = recipient();
        let mut flipped = good.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'q' { b'p' } else { b'q' };
        for bad in [
            String::new(),
            "age1".into(),
            "age1notarecipient".into(),
            good.to_uppercase(),
            String::from_utf8(flipped).unwrap(),
            good.replacen("age1", "agf1", 1),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
                .into(),
        ] {
            assert!(check_age_recipient(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn escrow_needs_two_to_max_custodians_with_distinct_names_and_a_threshold_within() {
        let ok = KeyEscrow::from_pb(&escrow(&["bank-a", "law-firm-b", "notary-d"], 2)).unwrap();
        assert_eq!(ok.threshold, 2);
        assert_eq!(ok.custodians.len(), 3);
        assert_eq!(KeyEscrow::from_pb(&ok.to_pb()).unwrap(), ok);
        for (names, k) in [
            (&["bank-a"][..], 2),
            (&["bank-a", "law-firm-b"], 1),
            (&["bank-a", "law-firm-b"], 3),
            (&["bank-a", "bank-a"], 2),
            (&["bank-a", "Bank-A"], 2),
            (&["bank-a", "notary-d", "BANK-a"], 2),
            (&["bank-a", "../x"], 2),
        ] {
            assert!(
                KeyEscrow::from_pb(&escrow(names, k)).is_err(),
                "{names:?} {k}"
            );
        }
        let mut bad = escrow(&["bank-a", "law-firm-b"], 2);
        bad.custodians[1].age_recipient = "age1notarecipient".into();
        let err = KeyEscrow::from_pb(&bad).unwrap_err();
        assert!(err.contains("law-firm-b"), "{err}");
    }

    #[test]
    fn two_custodians_with_one_recipient_are_refused() {
        // [a:R, b:R, c:R2] with k=2 would let the holder of R rebuild a share alone.
        let mut shared = escrow(&["bank-a", "law-firm-b", "notary-d"], 2);
        shared.custodians[1].age_recipient = shared.custodians[0].age_recipient.clone();
        let err = KeyEscrow::from_pb(&shared).unwrap_err();
        assert!(
            err.contains("bank-a") && err.contains("law-firm-b") && err.contains("same recipient"),
            "{err}"
        );
        // Not the last pair only: the first and the third.
        let mut shared = escrow(&["bank-a", "law-firm-b", "notary-d"], 3);
        shared.custodians[2].age_recipient = shared.custodians[0].age_recipient.clone();
        assert!(KeyEscrow::from_pb(&shared).is_err());
    }

    #[test]
    fn describe_names_every_custodian_with_its_recipient() {
        let e = KeyEscrow::from_pb(&escrow(&["bank-a", "law-firm-b"], 2)).unwrap();
        let d = e.describe();
        for c in &e.custodians {
            assert!(d.contains(&format!("{}:{}", c.name, c.recipient)), "{d}");
        }
    }
}
