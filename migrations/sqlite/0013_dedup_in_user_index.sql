-- The duplicate window is looked up among the user's own recent rows, through the index the
-- per-user limits already use, with the key beside them. Every write then keeps one index
-- fewer up to date: with a month of history, an index whose keys land at random costs a page
-- read and a page written per row.
DROP INDEX notifications_dedup;
DROP INDEX notifications_user_kind;
CREATE INDEX notifications_user_kind ON notifications (user_id, kind, created_at, dedup_key);
