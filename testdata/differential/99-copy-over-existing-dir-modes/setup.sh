# modes git cannot store
mkdir -p tree/etc tree/srv
echo n > tree/etc/new-file
chmod 0700 tree/etc
chmod 0750 tree/srv
mkdir -p closed
echo c > closed/c
mkdir closed/data
chmod 0711 closed/data
chmod 0700 closed
