echo "hello from the slim stage"
