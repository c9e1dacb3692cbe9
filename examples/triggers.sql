-- Charging from triggers: a tasks table charged by billing_charge. Every insert
-- charges the row's user; a row that fails or is deleted is refunded once.
-- Run as a superuser in a scratch database.
CREATE EXTENSION billing;
-- (errors below show their message, detail and hint, not the trigger's statement)
\set SHOW_CONTEXT never

CREATE TABLE tasks (
    task_no text PRIMARY KEY,
    user_id text NOT NULL,
    status  text NOT NULL DEFAULT 'running',
    request text);
CREATE TRIGGER charge AFTER INSERT OR UPDATE OR DELETE ON tasks
    FOR EACH ROW EXECUTE FUNCTION billing_charge(
        'user_column=user_id', 'amount=5', 'account_type=CHAT_DEC', 'source_type=CHAT',
        'source=report', 'association_column=task_no', 'status_column=status',
        'failed_status=failed');

SELECT balance_after FROM billing_add('carol', 12, 'RECHARGE_INC', 'RECHARGE', 'order-7');

-- Each insert charges 5, with the task number as the entry's association.
INSERT INTO tasks (task_no, user_id, request) VALUES ('task-1', 'carol', 'summarise');
INSERT INTO tasks (task_no, user_id, request) VALUES ('task-2', 'carol', 'translate');
SELECT billing_power('carol') AS power;

-- Too little power fails the insert with PB001: no row, no charge.
INSERT INTO tasks (task_no, user_id, request) VALUES ('task-3', 'carol', 'draw');
\echo SQLSTATE :LAST_ERROR_SQLSTATE
SELECT count(*) AS tasks FROM tasks;

-- A task that fails is refunded once; setting it to failed again refunds nothing more.
UPDATE tasks SET status = 'failed' WHERE task_no = 'task-1';
UPDATE tasks SET status = 'failed' WHERE task_no = 'task-1';
SELECT billing_power('carol') AS power;

-- Deleting a task refunds its charge too.
DELETE FROM tasks WHERE task_no = 'task-2';
SELECT billing_power('carol') AS power;

-- The entries, and what each task was charged and refunded.
SELECT seq, direction, amount, balance_after, account_type, association_no
  FROM billing.account_log WHERE user_id = 'carol' ORDER BY seq;
SELECT seq, direction, amount FROM billing_by_association('carol', 'task-1');
SELECT count(*) AS findings FROM billing_verify();
