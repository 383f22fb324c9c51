# git does not store hard links
ln dir/a dir/b
mkdir -p dir/sub
ln dir/a dir/sub/c
