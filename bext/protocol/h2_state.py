"""bext's HTTP/2 server state machine: h2's, configured once per connection (sans-IO)."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.settings
from h2.settings import SettingCodes

from bext.protocol.h2_limits import H2Limits
from bext.protocol.hpack_encoder import StaticEncoder


def new_h2_state(limits: H2Limits, header_list_size: int) -> h2.connection.H2Connection:
    """An h2 server state machine with bext's settings, its SETTINGS frame already queued.

    h2's own header validation is off (:mod:`bext.protocol.h2_headers` does it, with stream
    errors instead of connection errors). The advertised settings are installed as h2's
    *current* values before ``initiate_connection`` (the hypercorn way), so the first
    streams already get the large windows. Afterwards h2's copy of MAX_CONCURRENT_STREAMS is
    doubled: h2 treats a stream over its limit as a connection error, RFC 9113 §5.1.2 wants a
    stream error, so the connection refuses streams over the advertised value itself and h2
    only catches a client that blows far past it. Responses are encoded by
    :class:`~bext.protocol.hpack_encoder.StaticEncoder` (no dynamic table, cached fields).
    """
    config = h2.config.H2Configuration(
        client_side=False,
        header_encoding=None,
        validate_inbound_headers=False,
        normalize_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_outbound_headers=False,
    )
    state = h2.connection.H2Connection(config)
    state.encoder = StaticEncoder()
    advertised: dict[SettingCodes, int] = {
        SettingCodes.HEADER_TABLE_SIZE: limits.header_table_size,
        SettingCodes.ENABLE_PUSH: 0,
        SettingCodes.MAX_CONCURRENT_STREAMS: limits.max_concurrent_streams,
        SettingCodes.INITIAL_WINDOW_SIZE: limits.initial_window_size,
        SettingCodes.MAX_FRAME_SIZE: limits.max_frame_size,
        SettingCodes.MAX_HEADER_LIST_SIZE: header_list_size,
        SettingCodes.ENABLE_CONNECT_PROTOCOL: 0,
    }
    state.local_settings = h2.settings.Settings(client=False, initial_values=advertised)
    state.initiate_connection()
    advertised[SettingCodes.MAX_CONCURRENT_STREAMS] = 2 * limits.max_concurrent_streams
    state.local_settings = h2.settings.Settings(client=False, initial_values=advertised)
    # The hard HPACK limit: a list past it cannot be answered per stream (decoding stops
    # half way, so the compression state is lost) and the connection goes (HPACK bomb).
    # Between the advertised size and this one a request gets a 431 instead.
    state.decoder.max_header_list_size = 2 * header_list_size
    state.decoder.max_allowed_table_size = limits.header_table_size
    if limits.connection_window > 65535:
        state.increment_flow_control_window(limits.connection_window - 65535)
    return state
