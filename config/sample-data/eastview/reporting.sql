-- Eastview's reporting database, as its Regional Information Center hosts it for the district's
-- finance and HR system: base tables and the reporting views the hub reads (connection
-- `eastview-reporting`). The demo reads reporting.sqlite, built from this file with
--   python3 -c "import sqlite3; sqlite3.connect('reporting.sqlite').executescript(open('reporting.sql').read())"

CREATE TABLE hr_employee (
    emp_no TEXT PRIMARY KEY,
    first_name TEXT NOT NULL,
    last_name TEXT NOT NULL,
    status_code TEXT NOT NULL,
    hired DATE,
    separated DATE,
    email TEXT,
    birth_date DATE,
    changed_at TIMESTAMP NOT NULL
);

CREATE TABLE hr_position (
    emp_no TEXT NOT NULL REFERENCES hr_employee (emp_no),
    position_no TEXT NOT NULL,
    start_date DATE NOT NULL,
    end_date DATE,
    classification TEXT NOT NULL,
    title TEXT,
    fte NUMERIC NOT NULL,
    building TEXT,
    salary_schedule TEXT,
    step TEXT,
    annual_salary NUMERIC,
    gl_account TEXT,
    changed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (emp_no, position_no, start_date)
);

CREATE TABLE gl_budget (
    fiscal_year INTEGER NOT NULL,
    account TEXT NOT NULL,
    version TEXT NOT NULL,
    amount NUMERIC NOT NULL,
    changed_at TIMESTAMP NOT NULL,
    PRIMARY KEY (fiscal_year, account, version)
);

-- The views translate status codes the way the district's reports do.
CREATE VIEW rpt_employees AS
SELECT emp_no, first_name, last_name,
       CASE status_code WHEN 'A' THEN 'active' WHEN 'L' THEN 'on_leave'
            WHEN 'R' THEN 'retired' ELSE 'terminated' END AS status,
       hired, separated, email, birth_date, changed_at
FROM hr_employee;

CREATE VIEW rpt_assignments AS
SELECT emp_no, position_no, start_date, end_date, classification, title, fte, building,
       salary_schedule, step, annual_salary, gl_account, changed_at
FROM hr_position;

CREATE VIEW rpt_budget AS
SELECT fiscal_year, account, version, amount, changed_at FROM gl_budget;

INSERT INTO hr_employee VALUES
 ('E1001', 'Maria', 'Anderson', 'A', '2012-08-27', NULL, 'manderson@eastview.example.org', '1981-04-12', '2026-09-02 08:15:00'),
 ('E1002', 'Daniel', 'Brooks', 'A', '2016-09-01', NULL, 'dbrooks@eastview.example.org', '1988-11-30', '2026-09-02 08:15:00'),
 ('E1003', 'Li', 'Chen', 'A', '2009-08-31', NULL, 'lchen@eastview.example.org', '1976-02-03', '2026-09-02 08:15:00'),
 ('E1004', 'Rosa', 'Delgado', 'A', '2019-01-07', NULL, 'rdelgado@eastview.example.org', '1990-07-21', '2026-09-02 08:15:00'),
 ('E1005', 'Thomas', 'Evans', 'A', '2021-08-30', NULL, 'tevans@eastview.example.org', '1995-05-09', '2026-09-02 08:15:00'),
 ('E1006', 'Anna', 'Fischer', 'L', '2014-10-14', NULL, 'afischer@eastview.example.org', '1984-12-01', '2026-10-05 13:40:00'),
 ('E1007', 'Olivia', 'Grant', 'A', '2018-07-01', NULL, 'ogrant@eastview.example.org', '1979-09-17', '2026-09-02 08:15:00'),
 ('E1008', 'Kevin', 'Hughes', 'A', '2011-08-29', NULL, 'khughes@eastview.example.org', '1982-03-25', '2026-09-02 08:15:00'),
 ('E0987', 'Ruth', 'Ingram', 'R', '1994-09-01', '2026-06-30', NULL, '1961-01-14', '2026-07-01 09:00:00');

INSERT INTO hr_position VALUES
 ('E1001', 'P-TCH-014', '2012-08-27', NULL, 'teacher', 'Grade 4 teacher', 1.0, 'EES', 'EVTA', 'MA+30 step 14', 79400.00, 'A2110.150-00-0000', '2026-09-02 08:15:00'),
 ('E1002', 'P-TCH-022', '2016-09-01', NULL, 'teacher', 'Mathematics teacher', 1.0, 'EHS', 'EVTA', 'MA step 9', 72315.00, 'A2110.150-00-0000', '2026-09-02 08:15:00'),
 ('E1003', 'P-TCH-031', '2009-08-31', NULL, 'teacher', 'Special education teacher', 1.0, 'EMS', 'EVTA', 'MA+60 step 17', 83662.50, 'A2250.150-00-0000', '2026-09-02 08:15:00'),
 ('E1004', 'P-AID-007', '2019-01-07', NULL, 'aide', 'Teaching assistant', 0.8, 'EES', 'EVSSA', 'step 5', 37715.00, 'A2110.160-00-0000', '2026-09-02 08:15:00'),
 ('E1005', 'P-CUS-003', '2021-08-30', NULL, 'custodian', 'Custodian', 1.0, 'EHS', 'EVSSA', 'step 3', 44512.00, 'A1620.160-00-0000', '2026-09-02 08:15:00'),
 ('E1006', 'P-CLK-002', '2014-10-14', NULL, 'clerical', 'Senior account clerk', 1.0, 'DO', 'EVSSA', 'step 11', 50128.00, 'A1310.160-00-0000', '2026-10-05 13:40:00'),
 ('E1007', 'P-ADM-001', '2018-07-01', NULL, 'administrator', 'Elementary principal', 1.0, 'EES', 'EVAA', 'admin grade 2', 120000.00, 'A2020.150-00-0000', '2026-09-02 08:15:00'),
 ('E1008', 'P-TCH-009', '2011-08-29', NULL, 'teacher', 'Science teacher', 0.6, 'EHS', 'EVTA', 'MA step 13', 44118.00, 'A2110.150-00-0000', '2026-09-02 08:15:00'),
 ('E1008', 'P-CO-002', '2024-09-01', NULL, 'coach', 'Varsity soccer coach', 0.1, 'EHS', 'EVTA', 'stipend B', 4250.00, 'A2855.150-00-0000', '2026-09-02 08:15:00'),
 ('E0987', 'P-TCH-004', '1994-09-01', '2026-06-30', 'teacher', 'Reading teacher', 1.0, 'EES', 'EVTA', 'MA+60 step 25', 98120.00, 'A2110.150-00-0000', '2026-07-01 09:00:00');

INSERT INTO gl_budget VALUES
 (2027, 'A1310.160-00-0000', 'adopted', 182500.00, '2026-06-18 16:00:00'),
 (2027, 'A1620.160-00-0000', 'adopted', 611000.00, '2026-06-18 16:00:00'),
 (2027, 'A2020.150-00-0000', 'adopted', 365000.00, '2026-06-18 16:00:00'),
 (2027, 'A2110.150-00-0000', 'adopted', 9840250.00, '2026-06-18 16:00:00'),
 (2027, 'A2110.160-00-0000', 'adopted', 1210400.00, '2026-06-18 16:00:00'),
 (2027, 'A2250.150-00-0000', 'adopted', 2330000.00, '2026-06-18 16:00:00'),
 (2027, 'A2855.150-00-0000', 'adopted', 148900.00, '2026-06-18 16:00:00'),
 (2027, 'A9020.800-00-0000', 'adopted', 1980000.00, '2026-06-18 16:00:00'),
 (2027, 'A2110.150-00-0000', 'amended-1', 9902750.00, '2026-10-08 10:30:00'),
 (2027, 'A2250.150-00-0000', 'amended-1', 2367500.00, '2026-10-08 10:30:00');
