"""The processing core: partitions, mailboxes, epochs, invokers."""
