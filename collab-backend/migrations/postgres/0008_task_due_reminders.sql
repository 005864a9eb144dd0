-- `task.due_soon` reminders (issue 6). The periodic scan inserts a row here in the
-- transaction that queues the reminder's events; the primary key makes it one reminder
-- per task per due date, across restarts and across nodes scanning the same database.
-- A new due date is a new key, so moving a task's date reminds again.
CREATE TABLE task_due_reminders (
    task_id    TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    due_date   TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (task_id, due_date)
);
CREATE INDEX tasks_due_idx ON tasks (due_date);
