//! An account's events kept encoded until the account is folded: a builder holds every
//! revenue and CS event of every account (a live service for its whole life), and decoded,
//! with their strings, they took several times the bytes.

use tenure_core::event::{EventBody, EventKind, Subscription};
use tenure_core::time::Timestamp;

/// Events of one account in log order, each body encoded (`codec::encode_body`) in one
/// buffer.
#[derive(Clone, Debug, Default)]
pub(crate) struct Bodies {
    /// (time, length of the body in `bytes`, kind), in log order: 16 bytes an event (a
    /// body is one log record's, far below 4 GiB).
    events: Vec<(Timestamp, u32, EventKind)>,
    bytes: Vec<u8>,
}

impl Bodies {
    pub(crate) fn push(&mut self, ts: Timestamp, body: &EventBody) {
        let start = self.bytes.len();
        tenure_core::codec::encode_body(body, &mut self.bytes);
        let len = u32::try_from(self.bytes.len() - start).expect("a body of one log record");
        self.events.push((ts, len, body.kind()));
    }

    /// Takes `other`'s events, after ours.
    pub(crate) fn append(&mut self, other: Bodies) {
        if self.events.is_empty() {
            *self = other;
            return;
        }
        self.bytes.extend_from_slice(&other.bytes);
        self.events.extend(other.events);
    }

    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    pub(crate) fn times(&self) -> impl Iterator<Item = Timestamp> + '_ {
        self.events.iter().map(|e| e.0)
    }

    /// Each event's time, kind and encoded body, in log order.
    pub(crate) fn encoded(&self) -> impl Iterator<Item = (Timestamp, EventKind, &[u8])> + '_ {
        let mut at = 0;
        self.events.iter().map(move |&(ts, len, kind)| {
            let bytes = &self.bytes[at..at + len as usize];
            at += len as usize;
            (ts, kind, bytes)
        })
    }

    /// Every event, decoded, in log order.
    pub(crate) fn decode(&self) -> impl Iterator<Item = (Timestamp, EventBody)> + '_ {
        self.encoded().map(|(ts, kind, bytes)| (ts, decode(kind, bytes)))
    }

    /// The subscription events, decoded.
    pub(crate) fn subscriptions(&self) -> Vec<(Timestamp, Subscription)> {
        self.decode()
            .filter_map(|(ts, body)| match body {
                EventBody::Subscription(s) => Some((ts, *s)),
                _ => None,
            })
            .collect()
    }

    /// The contact ids its contact events name, in log order.
    pub(crate) fn contacts(&self) -> Vec<String> {
        self.encoded()
            .filter(|(_, kind, _)| *kind == EventKind::Contact)
            .filter_map(|(_, kind, bytes)| match decode(kind, bytes) {
                EventBody::Contact { contact_id, .. } => Some(contact_id),
                _ => None,
            })
            .collect()
    }
}

/// A body [`Bodies::push`] encoded.
pub(crate) fn decode(kind: EventKind, bytes: &[u8]) -> EventBody {
    tenure_core::codec::decode_body_of(kind, bytes).expect("a body the builder encoded decodes")
}
