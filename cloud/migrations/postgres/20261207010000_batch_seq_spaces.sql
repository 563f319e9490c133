-- Disjoint batch_seq spaces. MQTT batches carry a VEN's own counter, now
-- refused from 2^63 on (gridlink_protocol::MAX_BATCH_SEQ); HTTP ingest
-- numbers its batches from 2^63 (stored bit for bit as BIGINT: negative).
-- Before this, an MQTT batch could claim a number in HTTP ingest's counter
-- range (2^63 + n, n < 2^62), so the VEN's HTTP request that was later
-- handed that number was answered "duplicate_batch" and stored nothing.
-- Every such stored number is skipped: each VEN's HTTP counter moves past
-- the highest one stored, so no number handed out from now on is taken.
-- (Idempotency-Key numbers have the top two bits set, outside this range.)
INSERT INTO http_ingest_seq (ven_id, last_seq)
SELECT ven_id, MAX(batch_seq + 9223372036854775807 + 1)
FROM ingested_batches
WHERE batch_seq < -4611686018427387904
GROUP BY ven_id
ON CONFLICT (ven_id) DO UPDATE
SET last_seq = GREATEST(http_ingest_seq.last_seq, excluded.last_seq);
