// Mask payloads of wire protocol v1 (docs/protocol.md, "Payload encodings"), decoded in the browser.
// Each decoder returns a Uint8Array of H*W, row-major: 1 where the pixel is foreground, else 0.
// The viewer server has already checked every payload against its header (sizes, RLE sums, PNG header).

// u8: probabilities as bytes (round(p * 255)), row-major; foreground where p >= threshold.
function decodeU8(payload, h, w, threshold) {
  const out = new Uint8Array(h * w);
  for (let i = 0; i < out.length; i++) out[i] = payload[i] / 255 >= threshold ? 1 : 0;
  return out;
}

// bits: row-major, 8 pixels a byte, first pixel in the most significant bit.
function decodeBits(payload, h, w) {
  const out = new Uint8Array(h * w);
  for (let i = 0; i < out.length; i++) out[i] = (payload[i >> 3] >> (7 - (i & 7))) & 1;
  return out;
}

// rle: COCO uncompressed RLE, uint32 little-endian counts over column-major pixels, background first.
function decodeRle(payload, h, w) {
  const out = new Uint8Array(h * w);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  let k = 0; // column-major index: x * h + y
  for (let c = 0; c * 4 < payload.byteLength; c++) {
    const run = view.getUint32(c * 4, true);
    if (c % 2 === 1) {
      for (let j = k; j < k + run; j++) out[(j % h) * w + Math.floor(j / h)] = 1;
    }
    k += run;
  }
  return out;
}

// png: an 8-bit grayscale PNG of the binary mask (0 or 255), decoded by the browser.
async function decodePng(payload, h, w) {
  const bitmap = await createImageBitmap(new Blob([payload], { type: "image/png" }));
  const canvas = new OffscreenCanvas(w, h);
  const ctx = canvas.getContext("2d");
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = ctx.getImageData(0, 0, w, h).data;
  const out = new Uint8Array(h * w);
  for (let i = 0; i < out.length; i++) out[i] = rgba[i * 4] >= 128 ? 1 : 0;
  return out;
}

// The (H*W) foreground mask of one message: `mask` is the view header's mask part.
export async function decodeMask(mask, payload) {
  const [h, w] = mask.shape;
  switch (mask.encoding) {
    case "u8": return decodeU8(payload, h, w, mask.threshold);
    case "bits": return decodeBits(payload, h, w);
    case "rle": return decodeRle(payload, h, w);
    case "png": return decodePng(payload, h, w);
    default: throw new Error(`unknown mask encoding ${mask.encoding}`);
  }
}
