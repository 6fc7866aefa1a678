// Dead-letter streams exactly as flotilla_streams.dlq writes them: `<stream>.dlq` gets the original
// entry's fields plus dlq_* fields saying why, where from and when; adding there and acking the
// original happen in one MULTI, so an entry is never in both places nor in neither.

export const DLQ_SUFFIX = ".dlq";
const META_PREFIX = "dlq_";
const MAX_REASON_BYTES = 4000;

export const dlqStream = (stream) => stream + DLQ_SUFFIX;

/**
 * Move `letters` ({entryId, fields: Map name -> value, reason, deliveries}) from `stream` to its
 * dead-letter stream and ack them, atomically.
 */
export async function deadLetter(client, stream, group, consumer, letters) {
  if (!letters.length) return;
  const now = String(Date.now());
  const multi = client.multi();
  for (const letter of letters) {
    const flat = [];
    for (const [name, value] of letter.fields) {
      if (!name.startsWith(META_PREFIX)) flat.push(name, value);
    }
    flat.push(
      "dlq_reason", Buffer.from(letter.reason, "utf8").subarray(0, MAX_REASON_BYTES),
      "dlq_stream", stream,
      "dlq_entry_id", letter.entryId,
      "dlq_group", group,
      "dlq_consumer", consumer,
      "dlq_deliveries", String(letter.deliveries),
      "dlq_failed_at_ms", now,
    );
    multi.xadd(dlqStream(stream), "*", ...flat);
  }
  multi.xack(stream, group, ...letters.map((letter) => letter.entryId));
  const results = await multi.exec();
  const failed = results?.find(([error]) => error);
  if (failed) throw failed[0];
}
