//! Decompression of whole inputs (`.gz`, `.zst`): the one place a compressed byte stream
//! becomes plain bytes.

use super::Compression;
use std::io::Read;

/// Wrap a raw byte stream in the right decompressor.
pub fn open_decoder<R: Read + Send + 'static>(
    raw: R,
    compression: Compression,
) -> Box<dyn Read + Send> {
    match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
            raw,
        ))),
        Compression::Zstd => match zstd::stream::read::Decoder::new(raw) {
            Ok(d) => Box::new(d),
            Err(e) => Box::new(FailingReader(Some(e))),
        },
    }
}

struct FailingReader(Option<std::io::Error>);

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(self
            .0
            .take()
            .unwrap_or_else(|| std::io::Error::other("decoder failed")))
    }
}
