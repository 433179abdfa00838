# Access cost against working-set size for the software TLB.
#   build-bench/bench/bench_tlb --chart tlb_chart.dat
#   gnuplot -e "data='tlb_chart.dat'; out='docs/tlb_chart.svg'" bench/tlb_chart.gp
if (!exists("data")) data = 'tlb_chart.dat'
if (!exists("out")) out = 'tlb_chart.svg'
set terminal svg size 720,420 font "sans,11"
set output out
set title "vmmu TLB: 8-byte guest reads through vmmu_tlb_probe(), 4 KiB pages, random order"
set xlabel "working set (4 KiB pages)"
set ylabel "ns per access"
set logscale x 2
set logscale y 10
set key top left
set grid
plot data using 1:2 with linespoints title "TLB (hits; beyond the table: PSC-served misses)", \
     data using 1:3 with linespoints title "TLB, paging-structure caches off (cold misses)", \
     data using 1:4 with linespoints title "plain host load"
