-- VEN registration by the installer (PUT /api/v1/vens/{id}): the site's
-- name, known before the VEN's first message. Registered loads go into
-- `loads` while `vens.loads_at` is null; the first snapshot replaces them.
ALTER TABLE vens ADD COLUMN site TEXT;
