-- create_account
-- The account row of a user's first credit (or threshold).
-- kind: write
-- $1 user_id text
INSERT INTO billing.accounts (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING;
