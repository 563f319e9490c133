-- The site's grid meter from registration (PUT /api/v1/vens/{id}): the
-- `meter` of the series the measured response of events reads. Null: not
-- registered; then only a VEN with a single active_power/total series is
-- measured.
ALTER TABLE vens ADD COLUMN site_meter TEXT;
