"""The pull size follows the records per message the stream actually holds, whatever this process's mode."""

from earthkeep.events.jetstream import PullFetcher
from earthkeep.ingest.jetstream import observation_fetcher
from earthkeep.ingest.settings import IngestSettings


def fetcher(mode: str) -> PullFetcher:
    return observation_fetcher(None, IngestSettings(message_mode=mode, fetch_batch=500, batch_message_records=100))


def test_batch_consumer_reading_single_record_messages_pulls_many_of_them():
    f = fetcher("batch")
    assert f.messages == 5  # 500 records in messages of 100, as configured
    f.observe(messages=5, records=5)  # but the stream still holds one record per message (written in record mode)
    assert f.messages == 500


def test_record_consumer_reading_chunks_pulls_few_of_them():
    f = fetcher("record")
    assert f.messages == 500
    f.observe(messages=3, records=3000)
    assert f.messages == 1
    f.observe(messages=1, records=250)
    assert f.messages == 2
    f.observe(messages=0, records=0)  # an empty pull changes nothing
    assert f.messages == 2
