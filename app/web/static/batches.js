// Splitting many files into upload requests the server accepts: at most `maxFiles` files and
// `maxBytes` bytes of body each (the multipart framing counted with a margin per file).
// `items` are {file, path}; a file too large for any request is returned apart, never sent.

export const PART_OVERHEAD = 512; // bytes of multipart headers per file, generously

export function planBatches(items, maxFiles, maxBytes) {
  const batches = [];
  const tooLarge = [];
  let current = [];
  let size = 0;
  for (const item of items) {
    const cost = item.file.size + PART_OVERHEAD + 2 * item.file.name.length;
    if (cost > maxBytes) {
      tooLarge.push(item);
      continue;
    }
    if (current.length && (current.length >= maxFiles || size + cost > maxBytes)) {
      batches.push(current);
      current = [];
      size = 0;
    }
    current.push(item);
    size += cost;
  }
  if (current.length) batches.push(current);
  return { batches, tooLarge };
}

const IMAGE_NAME = /\.(jpe?g|jfif|png|webp|gif|bmp|tiff?|heic|heif|hif|avif|dng|cr2|cr3|nef|arw)$/i;

export function looksLikeImage(file) {
  return IMAGE_NAME.test(file.name) || (file.type || "").startsWith("image/");
}

// Every file of a drop, walking into dropped folders (DataTransfer items as file system entries).
export async function droppedFiles(dataTransfer) {
  const entries = Array.from(dataTransfer.items || [])
    .filter((item) => item.kind === "file")
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null));
  if (!entries.length || entries.some((entry) => !entry)) return Array.from(dataTransfer.files || []);
  const files = [];
  for (const entry of entries) await collect(entry, files);
  return files;
}

async function collect(entry, files) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    // Keep the path inside the dropped folder for display; the server only keeps the base name.
    files.push({ file, path: entry.fullPath.replace(/^\//, "") });
    return;
  }
  if (!entry.isDirectory) return;
  const reader = entry.createReader();
  // readEntries answers at most about 100 entries at a time: call it until it answers none.
  for (;;) {
    const chunk = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!chunk.length) break;
    for (const child of chunk) await collect(child, files);
  }
}
