module bluegreen.local/pause

go 1.22
