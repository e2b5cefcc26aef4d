"""The simulator's Fyers wire face: the same exchange core as the Kite face, Fyers' REST and sockets."""
