//! Records borrowed from wherever their members are kept, for writing `JCS(record)` without
//! building a [`Record`].
//!
//! The projection keeps records as normalised rows, and the cross-verifier re-derives every
//! record's bytes from them; building an owned `Record` first (a `String` or `Vec` per member,
//! each copied out of SQLite's row) was most of that re-derivation's cost. A [`RecordView`]
//! points at the columns where they are and is written by the same writer as `Record` itself
//! (`Record::to_bytes` goes through a view too), so the two cannot disagree.
//!
//! What a view can hold is what a record can hold, checked where it is built: a [`KeyIdRef`] is
//! a key id by construction, times are [`Timestamp`]s, ids are [`Uuid`]s. The one member a view
//! takes on trust is a payload given as text ([`PayloadView::UncheckedText`]): the caller must have
//! checked it is the RFC 8785 form of a JSON object (debug builds check, and panic).

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::ids::{is_key_id, Algorithm, KeyId, KeyIdError};
use crate::record::{Approval, Attachment, Decision, NotarySignature, Record};
use crate::timestamp::Timestamp;

/// A key id borrowed as text: 16 lowercase hex digits, like [`KeyId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyIdRef<'a>(&'a str);

impl<'a> KeyIdRef<'a> {
    /// `s` if it is a key id (the rule of `KeyId`'s `FromStr`).
    pub fn parse(s: &'a str) -> Result<KeyIdRef<'a>, KeyIdError> {
        if is_key_id(s) {
            Ok(KeyIdRef(s))
        } else {
            Err(KeyIdError(s.to_owned()))
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &'a str {
        self.0
    }

    /// An owned copy.
    pub fn to_key_id(&self) -> KeyId {
        KeyId::from_checked(self.0)
    }
}

impl KeyId {
    /// This id, borrowed.
    pub fn view(&self) -> KeyIdRef<'_> {
        KeyIdRef(self.as_str())
    }
}

/// An approval, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct ApprovalView<'a> {
    pub key_id: KeyIdRef<'a>,
    pub alg: Algorithm,
    pub signature: &'a [u8],
    pub signed_at: Timestamp,
}

/// The notary's signature, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct NotaryView<'a> {
    pub key_id: KeyIdRef<'a>,
    pub alg: Algorithm,
    pub signature: &'a [u8],
}

/// An attachment, borrowed. Written as [`Attachment`] is: `sha256` as it is given, an empty
/// name as no name.
#[derive(Debug, Clone, Copy)]
pub struct AttachmentView<'a> {
    pub sha256: &'a str,
    pub media_type: &'a str,
    pub size: u64,
    pub name: Option<&'a str>,
}

/// A decision's payload: the object, or its RFC 8785 text.
#[derive(Debug, Clone, Copy)]
pub enum PayloadView<'a> {
    Object(&'a Map<String, Value>),
    /// The RFC 8785 text of a JSON object, written as it is, unchecked in release builds: the
    /// caller must have checked that it is one (debug builds check, and panic on anything
    /// else). A view holding other text writes bytes that are no record's.
    UncheckedText(&'a [u8]),
}

/// A decision, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct DecisionView<'a> {
    pub id: Uuid,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub payload: PayloadView<'a>,
    pub proposed_at: Timestamp,
    pub supersedes: Option<Uuid>,
    pub attachments: &'a [AttachmentView<'a>],
}

/// A record, borrowed. `to_bytes` gives exactly the bytes of the [`Record`] it describes.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub version: u32,
    pub seq: u64,
    pub decision: DecisionView<'a>,
    pub approvals: &'a [ApprovalView<'a>],
    pub recorded_at: Timestamp,
    pub notary: NotaryView<'a>,
}

impl RecordView<'_> {
    /// `record_bytes = JCS(record)`, appended to `out`.
    pub fn write_bytes(&self, out: &mut Vec<u8>) {
        let start = out.len();
        crate::jcs::write_record(out, self);
        if cfg!(debug_assertions) {
            let owned = self.to_record();
            let reference = crate::jcs::record_bytes(&owned);
            assert_eq!(
                String::from_utf8_lossy(&out[start..]),
                String::from_utf8_lossy(&reference),
                "a record view's bytes differ from its record's"
            );
        }
    }

    /// `record_bytes = JCS(record)`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let d = &self.decision;
        let payload_len = match d.payload {
            PayloadView::UncheckedText(t) => t.len(),
            PayloadView::Object(_) => 256,
        };
        let mut out = Vec::with_capacity(1024 + d.body.len() + d.title.len() + payload_len);
        self.write_bytes(&mut out);
        out
    }

    /// The owned record. A payload given as text is parsed; text that is not a JSON object (a
    /// broken promise of the caller's) panics in debug builds and gives an empty payload in
    /// release builds.
    pub fn to_record(&self) -> Record {
        let d = &self.decision;
        let payload = match d.payload {
            PayloadView::Object(o) => o.clone(),
            PayloadView::UncheckedText(t) => {
                let parsed = serde_json::from_slice::<Map<String, Value>>(t);
                debug_assert!(parsed.is_ok(), "a payload view's text is not a JSON object");
                parsed.unwrap_or_default()
            }
        };
        Record {
            version: self.version,
            seq: self.seq,
            decision: Decision {
                id: d.id,
                kind: d.kind.to_owned(),
                title: d.title.to_owned(),
                body: d.body.to_owned(),
                payload,
                proposed_at: d.proposed_at,
                supersedes: d.supersedes,
                attachments: d
                    .attachments
                    .iter()
                    .map(|a| Attachment {
                        sha256: a.sha256.to_owned(),
                        media_type: a.media_type.to_owned(),
                        size: a.size,
                        name: a.name.map(str::to_owned),
                    })
                    .collect(),
            },
            approvals: self
                .approvals
                .iter()
                .map(|a| Approval {
                    key_id: a.key_id.to_key_id(),
                    alg: a.alg,
                    signature: a.signature.to_vec(),
                    signed_at: a.signed_at,
                })
                .collect(),
            recorded_at: self.recorded_at,
            notary: NotarySignature {
                key_id: self.notary.key_id.to_key_id(),
                alg: self.notary.alg,
                signature: self.notary.signature.to_vec(),
            },
        }
    }
}

impl Approval {
    /// This approval, borrowed.
    pub fn view(&self) -> ApprovalView<'_> {
        ApprovalView {
            key_id: self.key_id.view(),
            alg: self.alg,
            signature: &self.signature,
            signed_at: self.signed_at,
        }
    }
}

impl Attachment {
    /// This attachment, borrowed.
    pub fn view(&self) -> AttachmentView<'_> {
        AttachmentView {
            sha256: &self.sha256,
            media_type: &self.media_type,
            size: self.size,
            name: self.name.as_deref(),
        }
    }
}

impl NotarySignature {
    /// This signature, borrowed.
    pub fn view(&self) -> NotaryView<'_> {
        NotaryView {
            key_id: self.key_id.view(),
            alg: self.alg,
            signature: &self.signature,
        }
    }
}

impl Decision {
    /// This decision, borrowed, with `attachments` (its own, borrowed by the caller: a view
    /// holds them as a slice).
    pub fn view<'a>(&'a self, attachments: &'a [AttachmentView<'a>]) -> DecisionView<'a> {
        DecisionView {
            id: self.id,
            kind: &self.kind,
            title: &self.title,
            body: &self.body,
            payload: PayloadView::Object(&self.payload),
            proposed_at: self.proposed_at,
            supersedes: self.supersedes,
            attachments,
        }
    }
}
