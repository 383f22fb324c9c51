from alpine
copy a.txt /a
run true
