//! The generated services' codec: prost, with small initial buffers.
//!
//! tonic gives every stream an encode and a decode buffer of 8 KiB each by default, allocated
//! up front and kept for the stream's life. An agent's channel is one long-lived stream whose
//! messages are mostly heartbeats and acknowledgements of a few dozen bytes, so on a server
//! holding 10,000 agents those buffers alone were ≈ 16 KiB of each agent's ≈ 56 KiB. A buffer
//! still grows to fit a big message (an inventory report, an output chunk).

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial bytes of each stream's encode and decode buffer.
pub const BUFFER_BYTES: usize = 1024;
/// tonic's default: a stream yields to others after encoding this much.
const YIELD_THRESHOLD: usize = 32 * 1024;

/// [`ProstCodec`] with [`BUFFER_BYTES`] buffers (named by `codec_path` in build.rs).
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::new(BUFFER_BYTES, YIELD_THRESHOLD))
    }
}
