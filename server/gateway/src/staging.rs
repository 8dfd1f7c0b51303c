//! The tables that stage multipart uploads (see [`crate::multipart`]): found or created on
//! first use.

use std::sync::Arc;

use faascache_client::{Client, Error as ClientError, TableBacking, TableId, WritePolicy};

use crate::error::GwResult;

/// Names of the gateway's own tables start with this (hidden from ListBuckets).
pub const TABLE_PREFIX: &str = "faascache-gateway-";
pub(crate) const RECORDS: &str = "faascache-gateway-uploads";
pub(crate) const PARTS: &str = "faascache-gateway-parts";
/// Staged parts are dropped this long after they were written.
const PART_TTL_MS: u64 = 7 * 24 * 3600 * 1000;
/// The staging tables of one gateway.
#[derive(Debug)]
pub struct Uploads {
    pub(crate) records: TableId,
    pub(crate) parts: TableId,
}

impl Uploads {
    /// Find or create the staging tables.
    pub fn open(c: &Client) -> Result<Uploads, ClientError> {
        let records = match c.table_id(RECORDS) {
            Ok(t) => t,
            Err(ClientError::NoSuchTable(_)) => c.create_table(RECORDS, 1)?,
            Err(e) => return Err(e),
        };
        let mut b = TableBacking::new("", WritePolicy::Ephemeral);
        b.ttl_ms = PART_TTL_MS;
        let parts = c.create_backed_table_unchecked(PARTS, 1, &b)?;
        Ok(Uploads { records, parts })
    }
}

/// The staging tables, opened on first use.
pub(crate) fn open_lazily<'a>(
    cell: &'a std::sync::OnceLock<Uploads>,
    c: &Arc<Client>,
) -> GwResult<&'a Uploads> {
    if let Some(u) = cell.get() {
        return Ok(u);
    }
    let u = Uploads::open(c)?;
    Ok(cell.get_or_init(|| u))
}
