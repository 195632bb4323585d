//! `nf_conntrack_alter_reply`: changing the reply tuple of a connection
//! before it is confirmed, as IPVS does with `net.ipv4.vs.conntrack=1`
//! (`ip_vs_update_conntrack`) so that replies from the real server are
//! found and NAT set up later (MASQUERADE at POSTROUTING) builds on the
//! rewritten flow.
//!
//! Must never: touch a confirmed entry (its tuples are in the table's
//! index), or set NAT status bits (IPVS rewrites packets itself; conntrack
//! only has to recognise them).
//!
//! Error contract: returns whether the entry was changed; unknown and
//! confirmed entries are left alone.

use super::entry::Status;
use super::Conntrack;
use crate::packet::Tuple;

impl Conntrack {
    /// Replace the reply tuple of unconfirmed entry `id`. Returns false
    /// (and changes nothing) for an unknown or confirmed entry.
    pub fn alter_reply(&mut self, id: u64, reply: Tuple) -> bool {
        match self.entries.get_mut(&id) {
            Some(e) if !e.status.has(Status::CONFIRMED) => {
                e.reply = reply;
                true
            }
            _ => false,
        }
    }
}
