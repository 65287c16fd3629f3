//! Write coalescing: frames of a large response gathered into few large writes.

use super::*;

/// How much of a large response the relay gathers before writing (see `defer_write`).
pub(super) const COALESCE_BYTES: usize = 256 * 1024;

/// How long frames may wait for the rest of a message that ends a read (see `defer_write`).
pub(super) const MAX_DEFER: std::time::Duration = std::time::Duration::from_millis(1);

/// Whether to read more before writing the `consumed` bytes of whole frames at the front of `buf`.
/// When the server's bytes end inside a message, it is streaming a large response: PostgreSQL
/// flushes mid-message when its 8 KiB send buffer is full. Writing what is whole at once would
/// wake the client for every 8 KiB, twice the wake-ups of a direct connection, which on a busy
/// host costs more than the relay itself; gathering up to `COALESCE_BYTES` first lets the client
/// take the result in a few large reads. The rest of the split message usually follows within
/// microseconds, but a server producing rows slowly may keep it for a long time, so frames never
/// wait more than `MAX_DEFER`.
pub(super) fn defer_write(buf: &[u8], consumed: usize) -> bool {
    buf.len() > consumed && consumed < COALESCE_BYTES
}

/// Writes the frames handled so far and drops them from `buf`: `out` holds what was rewritten up to
/// `pass_from`, and the rest up to `consumed` goes as it came. Leaves `out` empty and both marks at 0.
pub(super) async fn write_frames<W: AsyncWrite + Unpin>(
    client: &mut W,
    buf: &mut BytesMut,
    consumed: &mut usize,
    pass_from: &mut usize,
    out: &mut BytesMut,
) -> std::io::Result<()> {
    if *consumed == 0 {
        return Ok(());
    }
    let written = if out.is_empty() {
        client.write_all(&buf[*pass_from..*consumed]).await
    } else {
        out.extend_from_slice(&buf[*pass_from..*consumed]);
        client.write_all(out).await
    };
    out.clear();
    buf.advance(*consumed);
    *consumed = 0;
    *pass_from = 0;
    written?;
    client.flush().await
}
