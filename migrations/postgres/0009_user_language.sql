-- A person's language for the texts they receive (a short BCP 47 tag such as `de` or
-- `pt-BR`); NULL uses the backend's default language.
ALTER TABLE directory_users ADD COLUMN language TEXT;
