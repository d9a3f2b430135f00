# Plot tasks/s against -c from the data file bench/suite.py writes.
# Usage: gnuplot -e "data='FILE'; output='FILE.png'" bench/scaling.gp
set terminal pngcairo size 900,540 font "sans,11"
set output output
set title "Draining tasks.add with rpc results, prefetch 4 × -c"
set xlabel "-c (worker concurrency; the ceiling uses prefetch 4 × -c)"
set ylabel "tasks/s"
set logscale x 2
set xtics (1, 2, 4, 8)
set xrange [0.8:10]
set yrange [0:*]
set grid ytics
set key outside below center horizontal maxrows 1
set datafile missing "NaN"
plot data using 1:2 with linespoints lw 2 pt 7 title "broker ceiling (bench/ceiling.c)", \
     data using 1:3 with linespoints lw 2 pt 5 title "celeriac prefork", \
     data using 1:4 with linespoints lw 2 pt 9 title "Python Celery prefork"
