/** Two distributions side by side as bars (SVG): the reference's shares against the live ones. */

export function Histogram(props: { title: string; labels: readonly string[]; reference: readonly number[]; live: readonly number[] }) {
  const max = Math.max(0.0001, ...props.reference, ...props.live);
  const n = props.labels.length;
  const width = 640;
  const height = 180;
  const band = width / Math.max(1, n);
  const bar = Math.max(2, band / 2 - 3);
  const y = (v: number) => height - (v / max) * (height - 20);
  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <svg
        viewBox={`0 0 ${width} ${height + 40}`}
        class="histogram"
        role="img"
        aria-label={`${props.title}: reference and live share per bin`}
      >
        {props.labels.map((label, i) => {
          const ref = props.reference[i] ?? 0;
          const live = props.live[i] ?? 0;
          const x = i * band;
          return (
            <g key={label}>
              <rect x={x + 2} y={y(ref)} width={bar} height={height - y(ref)} class="bar-reference">
                <title>{`${label}: reference ${(ref * 100).toFixed(1)}%`}</title>
              </rect>
              <rect x={x + 2 + bar + 2} y={y(live)} width={bar} height={height - y(live)} class="bar-live">
                <title>{`${label}: live ${(live * 100).toFixed(1)}%`}</title>
              </rect>
              <text x={x + band / 2} y={height + 14} text-anchor="middle" class="bar-label">
                {label.length > 10 ? `${label.slice(0, 9)}…` : label}
              </text>
            </g>
          );
        })}
        <g class="legend">
          <rect x={0} y={height + 24} width={12} height={12} class="bar-reference" />
          <text x={16} y={height + 34}>
            reference
          </text>
          <rect x={100} y={height + 24} width={12} height={12} class="bar-live" />
          <text x={116} y={height + 34}>
            live
          </text>
        </g>
      </svg>
      <table class="sr-only">
        <caption>{props.title}</caption>
        <thead>
          <tr>
            <th scope="col">bin</th>
            <th scope="col">reference</th>
            <th scope="col">live</th>
          </tr>
        </thead>
        <tbody>
          {props.labels.map((label, i) => (
            <tr key={label}>
              <td>{label}</td>
              <td>{((props.reference[i] ?? 0) * 100).toFixed(1)}%</td>
              <td>{((props.live[i] ?? 0) * 100).toFixed(1)}%</td>
            </tr>
          ))}
        </tbody>
      </table>
    </figure>
  );
}
