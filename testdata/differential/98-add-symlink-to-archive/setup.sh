mkdir p && echo x > p/x
tar -cf real.tar p
rm -rf p
ln -s real.tar link.tar
