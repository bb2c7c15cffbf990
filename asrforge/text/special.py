"""Token ids every asrforge tokenizer shares.

Id 0 is the CTC blank. It never occurs inside a transcript, so it doubles as the attention decoders'
start and end symbols and as the transducer's start symbol: one vocabulary serves every family.
"""

BLANK_ID = 0
SOS_ID = EOS_ID = BLANK_ID
