-- Chat messages that carried a page (Telegram, Slack's Web API), so that the message can be
-- edited to say who acted once OnCall reports the alert group acknowledged or resolved.
-- `reference` is the service's id of the message (Telegram's message_id, Slack's ts);
-- `edited_state` is the alert group state the message last said.
CREATE TABLE chat_messages (
    notification_id BIGINT NOT NULL,
    backend TEXT NOT NULL,
    chat TEXT NOT NULL,
    reference TEXT NOT NULL,
    text TEXT NOT NULL,
    edited_state TEXT,
    sent_at BIGINT NOT NULL,
    PRIMARY KEY (notification_id, backend, chat, reference)
);
