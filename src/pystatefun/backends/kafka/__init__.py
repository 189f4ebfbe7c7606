"""The Kafka backend: worker processes of one application share Apache Kafka as their log.

``topics`` names, creates and checks the application's topics; ``records`` is the format of its
messages and changelog; ``store`` commits each epoch as one Kafka transaction and keeps the owned
partitions' state; ``worker`` joins the consumer group, restores and hands over partitions.
"""
