FRMO alpine
